import sys

try:
    from . import main
except KeyboardInterrupt:  # Ctrl-C while Python is still loading Batchgrid
    print("batchgrid: stopped: before any row ran; nothing was written", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
