"""The API routers; ``server.app.create_app`` includes them in this order: health, device, admin, console."""
