from tools.shell.app import main

raise SystemExit(main())
