"""Collection: the hit endpoints, wire protocols, cookies and identity, routing."""
