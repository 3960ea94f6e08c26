"""Users' servers, pure: what they may ask for, what they are told, and renku's shapes."""
