from dcmtool.cli.entry import main

main()
