"""LocalStack plugins for running Lambda functions as host processes.

* ``plugin.LocalProcessRuntimeExecutorPlugin`` -- Lambda runtime executor
  ``local-process`` (select with ``LAMBDA_RUNTIME_EXECUTOR=local-process``).
* ``hooks.healthpay_loopback_ports`` -- start hook that makes LocalStack's
  free-port helper hand out ports from a fixed loopback range.
"""

PLUGIN_NAME = "local-process"
