"""The project's database: the borrower directory and every record the service keeps."""
