from upt.cli import main

raise SystemExit(main())
