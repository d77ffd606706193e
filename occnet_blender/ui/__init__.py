"""What the artist sees: the sidebar panel, the operators, the scene and object properties, the preferences."""
