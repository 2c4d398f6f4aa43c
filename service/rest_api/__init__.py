from flask import Flask

from rest_api.routes import rebar

app = Flask(__name__)
rebar.init_app(app)
