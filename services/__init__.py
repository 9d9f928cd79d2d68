"""Domain services: what an account can see and change, checked for that account.

Each module covers one area (models, versions, datasets, jobs, keys, usage) and
takes a ServiceContext (services/account.py): who acts, the database session,
the settings and the app's parts. The HTTP API views and the web UI both call
these, so an account sees and touches the same things through either. Nothing
here imports Flask: errors are core/errors.py's, each with its HTTP status.
"""
