"""citygrid's domain: Wenshan's enforcement geography in PostGIS, nothing here knows about HTTP."""
