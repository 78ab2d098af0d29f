from mumic_core.cli import main

main()
