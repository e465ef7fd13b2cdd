from aiplane.cli import main

main()
