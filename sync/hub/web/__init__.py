"""The fleet page's static files (HTML, CSS, JavaScript), served by sync/hub/fleet_page.py."""
