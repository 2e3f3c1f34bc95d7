"""One module per CLI stage. Each defines ``add_parser(subparsers)`` and sets ``func``.

Modules here parse options, call the library and print; the library never imports them.
Heavy imports belong inside the command function, so ``asr-distill --help`` stays fast.
"""
