"""Installers and process managers for the retrieval backends ltrr runs itself."""
