"""Test machinery: runs the Pulumi program under Pulumi's mock runtime with a mocks class that
applies each declared Docker resource to a real engine. Not a deploy path for users: real
deployments use `pulumi up` (`make up`)."""
