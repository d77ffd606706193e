"""OccNet for Blender, the add-on half: runs inside Blender with bpy, numpy and the standard library only."""
