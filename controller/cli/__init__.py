"""The `farmctl` command line. Each command module imports heavy libraries inside its commands."""
