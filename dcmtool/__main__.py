from dcmtool.cli.app import main

main()
