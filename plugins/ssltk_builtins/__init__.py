"""ssltk's built-in plugins; each module is loaded through the ``ssltk`` entry-point group."""
