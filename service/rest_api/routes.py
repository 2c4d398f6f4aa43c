from flask_rebar import Rebar, response

rebar = Rebar()
registry = rebar.create_handler_registry()


@registry.handles(rule="/", method="GET")
def hello():
    return response(data={"message": "Hello, Being!"}, status_code=200)
