"""The checkout example service: canaryconf settings in a Django project."""
