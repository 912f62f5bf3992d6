from costctx.cli.main import main

raise SystemExit(main())
