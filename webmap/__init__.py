"""The planners' map: a Folium page whose layers load from the API, with assets served by the API itself."""
