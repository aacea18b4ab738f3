"""ssltk-plugin-examples: the worked examples of ssltk's plugin-author guide.

Nothing is imported here: ssltk imports the entry-point module (``plugin``) on
every command, and Python imports this file first.
"""
