#!/bin/bash
# LocalStack init hook (Docker setup only, see ../../docker-compose.yml): when
# LocalStack is ready, deploy the project's template.yaml with the functions
# that `cargo lambda build` left in target/lambda/<binary>/bootstrap.
#
# Runs inside the LocalStack container, where the repository is mounted at
# /project.  Lambda code is loaded with hot reloading, whose path is resolved
# by the Docker daemon, so it must be the HOST path of target/lambda
# (HOST_PROJECT_DIR, set by docker-compose.yml).
set -euo pipefail

PROJECT=/project
STACK="${HEALTHPAY_STACK_NAME:-healthpay}"
LAMBDA_DIR="${HOST_PROJECT_DIR:?HOST_PROJECT_DIR must be the repository path on the Docker host}/target/lambda"

if [[ ! -d "$PROJECT/target/lambda" ]]; then
  echo "deploy hook: $PROJECT/target/lambda missing; run 'cargo lambda build --release' first (skipping deploy)" >&2
  exit 0
fi

# the template is built for `sam build`; point each function at its binary
# folder and inline the state machine definition
python3 "$PROJECT/localstack/support/localize_template.py" "$PROJECT/template.yaml" \
  --lambda-dir "$LAMBDA_DIR" --arch "${LAMBDA_ARCH:-x86_64}" >/tmp/healthpay-template.json

awslocal cloudformation deploy \
  --stack-name "$STACK" \
  --template-file /tmp/healthpay-template.json \
  --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
  --parameter-overrides "JwtSecret=${HEALTHPAY_JWT_SECRET:-local-development-secret-0123456789}" \
  --no-fail-on-empty-changeset

awslocal cloudformation describe-stacks --stack-name "$STACK" \
  --query 'Stacks[0].Outputs' --output table
