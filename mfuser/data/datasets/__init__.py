"""One module per dataset; register.py registers them all."""
