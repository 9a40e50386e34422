"""Reading and checking the data directory: the contract, file I/O and example data sets."""
