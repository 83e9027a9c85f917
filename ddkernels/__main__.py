from ddkernels.cli import main

raise SystemExit(main())
