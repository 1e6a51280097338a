"""Infrastructure every part uses: error types and exit statuses (errors.py), atomic writes and output checks
(fileio.py), progress and ETA (progress.py), one run per folder (run_lock.py), signals (interrupts.py), and the device
set-up with the one-line error reporting of the entry points (runtime.py)."""
