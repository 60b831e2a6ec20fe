"""The job store and its one writer: states, store functions, the dispatcher, fleets."""
