# shellcheck shell=bash
# Source this file to point AWS SDKs and CLIs at the LocalStack started by
# start.sh:   source localstack/env.sh
# (dummy credentials: LocalStack accepts any; "test" maps to account 000000000000)
export AWS_ENDPOINT_URL="http://127.0.0.1:${LOCALSTACK_PORT:-4566}"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
export AWS_REGION=us-east-1
# a profile or session token from the developer's real setup would win over
# the variables above in some SDKs
unset AWS_PROFILE AWS_SESSION_TOKEN
