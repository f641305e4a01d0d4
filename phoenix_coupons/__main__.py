from phoenix_coupons.cli import main

raise SystemExit(main())
