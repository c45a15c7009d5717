from lensflow.cli import main

main()
