from rest_api import app

if __name__ == "__main__":
    # Flask's development server, for local experiments only; containers run gunicorn.
    # Debug stays off unless FLASK_DEBUG=1 is set.
    app.run()
