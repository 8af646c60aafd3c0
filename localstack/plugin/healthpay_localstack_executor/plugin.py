"""Entry point for LocalStack's ``localstack.lambda.runtime_executor`` namespace."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin

from healthpay_localstack_executor import PLUGIN_NAME


class LocalProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    # plux builds the plugin spec from these class attributes; the name must
    # match the entry point name in pyproject.toml and LAMBDA_RUNTIME_EXECUTOR.
    name = PLUGIN_NAME

    def load(self, *args, **kwargs):
        # imported lazily: LocalStack only loads the executor when Lambda starts
        from healthpay_localstack_executor.executor import LocalProcessRuntimeExecutor

        return LocalProcessRuntimeExecutor
