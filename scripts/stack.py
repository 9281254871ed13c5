#!/usr/bin/env python3
"""Deploys template.yaml to the local emulator and operates the local stack.

Called by scripts/local and scripts/test (which install the pinned tools and
start the emulator first). Sub-commands:

  deploy  lay out the built binaries the way `sam build` does, `sam deploy`
          the real template, then create the HTTP API routes (see below)
  token   mint a Cognito access token for a user (optionally an admin)
  seed    load the demo catalog (and rebate rules) through the API with an admin token
  pay     send the sandbox provider's signed result callback for a payment
  dlq     list dead-lettered messages with their reason; --redrive sends them back
  secret  print the local stack's callback signing secret
  info    print the stack's endpoints
  env     print shell exports of the functions' environment
"""

import argparse
import json
import os
import re
import hashlib
import hmac
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import boto3
from samcli.yamlhelper import yaml_dump, yaml_parse

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "000000000000"


def clients(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def outputs_path(stack_dir):
    return Path(stack_dir) / "outputs.json"


def load_outputs(stack_dir):
    path = outputs_path(stack_dir)
    if not path.exists():
        sys.exit(f"no local stack deployed in {stack_dir}: run scripts/local up")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- deploying


def lay_out_build(stack_dir, profile):
    """Writes what `sam build` would: one folder per function holding its
    `bootstrap`, and a template whose CodeUri points at those folders.

    The binaries come from one `cargo build` of the whole workspace (the same
    build `cargo test` uses), not from one cargo-lambda build per function:
    locally the emulator runs them as host processes. `sam build` with the
    template's rust-cargolambda metadata is what packages them for AWS."""
    template = yaml_parse((ROOT / "template.yaml").read_text())
    build_dir = Path(stack_dir) / "build"
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        source = ROOT / "target" / profile / binary
        if not source.exists():
            sys.exit(f"{source} is missing: build the functions first")
        code_dir = build_dir / logical_id
        code_dir.mkdir()
        shutil.copy2(source, code_dir / "bootstrap")
        resource["Properties"]["CodeUri"] = str(code_dir)
        del resource["Metadata"]
    built = build_dir / "template.yaml"
    built.write_text(yaml_dump(template))
    return built


def sam_deploy(endpoint, built_template, extra_parameters):
    s3 = clients(endpoint, "s3")
    bucket = "shop-local-artifacts"
    if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=bucket)
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
    cmd = [
        "sam", "deploy", "--config-file", str(ROOT / "samconfig.toml"), "--config-env", "local",
        "--template-file", str(built_template),
    ]
    if extra_parameters:
        # A command-line --parameter-overrides replaces samconfig's, so the
        # local environment's own overrides are repeated first.
        config = tomllib.loads((ROOT / "samconfig.toml").read_text())
        base = config["local"]["deploy"]["parameters"]["parameter_overrides"]
        cmd += ["--parameter-overrides", f"{base} {' '.join(extra_parameters)}"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        sys.exit("sam deploy failed")


class Resolver:
    """Resolves the intrinsic functions SAM leaves in the OpenAPI body
    (Ref, Fn::Sub, Fn::GetAtt) against the deployed stack."""

    def __init__(self, endpoint, stack_name):
        cfn = clients(endpoint, "cloudformation")
        self.cfn, self.stack_name = cfn, stack_name
        self.lambda_ = clients(endpoint, "lambda")
        resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        self.physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
        self.types = {r["LogicalResourceId"]: r["ResourceType"] for r in resources}
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def ref(self, name):
        if name == "AWS::NoValue":
            return None
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.physical:
            return self.physical[name]
        return self.parameters()[name]

    def parameters(self):
        """The stack's parameters, a CommaDelimitedList as a list."""
        if not hasattr(self, "_parameters"):
            stack = self.cfn.describe_stacks(StackName=self.stack_name)["Stacks"][0]
            template = self.processed_template()
            kinds = {k: v.get("Type") for k, v in template.get("Parameters", {}).items()}
            self._parameters = {}
            for p in stack.get("Parameters", []):
                value = p.get("ResolvedValue", p["ParameterValue"])
                if kinds.get(p["ParameterKey"]) == "CommaDelimitedList":
                    value = [v for v in value.split(",")] if value else [""]
                self._parameters[p["ParameterKey"]] = value
        return self._parameters

    def processed_template(self):
        if not hasattr(self, "_template"):
            body = self.cfn.get_template(StackName=self.stack_name, TemplateStage="Processed")["TemplateBody"]
            self._template = json.loads(body) if isinstance(body, str) else body
        return self._template

    def condition(self, name):
        return bool(self.evaluate(self.processed_template()["Conditions"][name]))

    def evaluate(self, node):
        """A condition's intrinsics: Fn::Equals, Fn::Not, Fn::And, Fn::Or,
        Fn::Join, Condition and Ref."""
        if isinstance(node, dict) and len(node) == 1:
            (key, value), = node.items()
            if key == "Fn::Equals":
                return self.evaluate(value[0]) == self.evaluate(value[1])
            if key == "Fn::Not":
                return not self.evaluate(value[0])
            if key == "Fn::And":
                return all(self.evaluate(v) for v in value)
            if key == "Fn::Or":
                return any(self.evaluate(v) for v in value)
            if key == "Fn::Join":
                items = self.evaluate(value[1])
                return value[0].join(str(i) for i in items)
            if key == "Condition":
                return self.condition(value)
            if key == "Ref":
                return self.ref(value)
        if isinstance(node, list):
            return [self.evaluate(v) for v in node]
        return node

    def get_att(self, logical_id, attribute):
        if self.types.get(logical_id) == "AWS::Lambda::Function" and attribute == "Arn":
            name = self.physical[logical_id]
            return self.lambda_.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        raise ValueError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute}")

    def sub(self, value):
        text, variables = (value, {}) if isinstance(value, str) else value

        def replace(match):
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def resolve(self, node):
        if isinstance(node, list):
            return [self.resolve(x) for x in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::Sub":
                return self.sub(value)
            if key == "Fn::GetAtt":
                parts = value.split(".", 1) if isinstance(value, str) else value
                return self.get_att(*parts)
            if key == "Fn::Split":
                return str(self.resolve(value[1])).split(value[0])
            if key == "Fn::If":
                chosen = value[1] if self.condition(value[0]) else value[2]
                return self.resolve(chosen)
        return {k: self.resolve(v) for k, v in node.items()}


def create_http_api_routes(endpoint, stack_name):
    """EMULATOR WORKAROUND (local tooling only; template.yaml is untouched).

    ministack 1.5.33 ignores the OpenAPI `Body` that the SAM transform puts on
    AWS::ApiGatewayV2::Api, so a deployed HttpApi has no routes there. This
    reads the processed template and creates the same JWT authorizers,
    Lambda proxy integrations and routes through the API Gateway v2 API, as
    AWS does when it imports the body. Re-running replaces them."""
    cfn = clients(endpoint, "cloudformation")
    apigw = clients(endpoint, "apigatewayv2")
    template = cfn.get_template(StackName=stack_name, TemplateStage="Processed")["TemplateBody"]
    if isinstance(template, str):
        template = json.loads(template)
    resolver = Resolver(endpoint, stack_name)
    apis = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::ApiGatewayV2::Api" or "Body" not in resource["Properties"]:
            continue
        api_id = resolver.physical[logical_id]
        body = resource["Properties"]["Body"]
        for route in apigw.get_routes(ApiId=api_id)["Items"]:
            apigw.delete_route(ApiId=api_id, RouteId=route["RouteId"])
        for integration in apigw.get_integrations(ApiId=api_id)["Items"]:
            apigw.delete_integration(ApiId=api_id, IntegrationId=integration["IntegrationId"])
        for authorizer in apigw.get_authorizers(ApiId=api_id)["Items"]:
            apigw.delete_authorizer(ApiId=api_id, AuthorizerId=authorizer["AuthorizerId"])

        authorizer_ids = {}
        for name, scheme in body.get("components", {}).get("securitySchemes", {}).items():
            spec = resolver.resolve(scheme["x-amazon-apigateway-authorizer"])
            if spec.get("type", "jwt") != "jwt":
                sys.exit(f"authorizer {name}: only JWT authorizers are supported locally")
            identity = spec["identitySource"]
            created = apigw.create_authorizer(
                ApiId=api_id,
                Name=name,
                AuthorizerType="JWT",
                IdentitySource=[identity] if isinstance(identity, str) else identity,
                JwtConfiguration={
                    "Audience": spec["jwtConfiguration"]["audience"],
                    "Issuer": spec["jwtConfiguration"]["issuer"],
                },
            )
            authorizer_ids[name] = created["AuthorizerId"]

        routes = []
        for path, operations in body.get("paths", {}).items():
            for method, operation in operations.items():
                spec = resolver.resolve(operation["x-amazon-apigateway-integration"])
                integration = apigw.create_integration(
                    ApiId=api_id,
                    IntegrationType="AWS_PROXY",
                    IntegrationMethod="POST",
                    IntegrationUri=spec["uri"],
                    PayloadFormatVersion=spec.get("payloadFormatVersion", "2.0"),
                )
                security = operation.get("security", body.get("security", []))
                scheme = next(iter(security[0]), None) if security else None
                # SAM writes `Auth: Authorizer: NONE` as a scheme named NONE.
                if scheme == "NONE":
                    scheme = None
                verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                route = {
                    "ApiId": api_id,
                    "RouteKey": f"{verb} {path}",
                    "Target": f"integrations/{integration['IntegrationId']}",
                    "AuthorizationType": "JWT" if scheme else "NONE",
                }
                if scheme:
                    route["AuthorizerId"] = authorizer_ids[scheme]
                apigw.create_route(**route)
                routes.append(route["RouteKey"] + ("" if scheme else " (no JWT)"))
        cors = resolver.resolve(body.get("x-amazon-apigateway-cors") or {})
        if cors:
            # ministack's SAM transform resolves the parameter with its
            # default, not the deployed value: take the origins from the
            # stack's parameter.
            cors["allowOrigins"] = resolver.parameters().get("WebAppOrigins", "")
        apply_cors(apigw, api_id, cors)
        apis[logical_id] = {"apiId": api_id, "routes": sorted(routes)}
    return apis


def apply_cors(apigw, api_id, cors):
    """EMULATOR WORKAROUND, with create_http_api_routes: the CORS
    configuration SAM writes into the OpenAPI body
    (`x-amazon-apigateway-cors`), set through the API Gateway v2 API as AWS
    does when it imports the body. No allowed origin: none at all."""
    names = {"allowOrigins": "AllowOrigins", "allowMethods": "AllowMethods", "allowHeaders": "AllowHeaders",
             "exposeHeaders": "ExposeHeaders", "maxAge": "MaxAge", "allowCredentials": "AllowCredentials"}
    config = {names[k]: v for k, v in (cors or {}).items() if k in names}
    origins = config.get("AllowOrigins") or []
    if isinstance(origins, str):
        origins = origins.split(",")
    origins = [o.strip() for o in origins if o.strip()]
    if not origins:
        try:
            apigw.delete_cors_configuration(ApiId=api_id)
        except apigw.exceptions.NotFoundException:
            pass
        return
    config["AllowOrigins"] = origins
    apigw.update_api(ApiId=api_id, CorsConfiguration=config)


SIGNING_SECRET_PARAMETER = "/shop/payments/signing-secret"


def ensure_signing_secret(endpoint):
    """The payment provider's callback signing secret, generated once per
    local stack into the emulator's SSM as a SecureString, as an operator
    would create it on AWS before deploying."""
    ssm = clients(endpoint, "ssm")
    try:
        ssm.get_parameter(Name=SIGNING_SECRET_PARAMETER, WithDecryption=True)
    except ssm.exceptions.ParameterNotFound:
        ssm.put_parameter(
            Name=SIGNING_SECRET_PARAMETER,
            Type="SecureString",
            Value="whsec_" + secrets.token_urlsafe(32),
            Description="sandbox payment provider callback signing secret (local stack)",
        )


def signing_secret(outputs):
    ssm = clients(outputs["endpoint"], "ssm")
    return ssm.get_parameter(Name=SIGNING_SECRET_PARAMETER, WithDecryption=True)["Parameter"]["Value"]


def put_credentials(endpoint, name, credentials_file):
    """A provider's credentials (made by its simulator's `keys`), put into
    the emulator's SSM as an operator puts real ones on AWS."""
    clients(endpoint, "ssm").put_parameter(
        Name=name, Type="SecureString", Overwrite=True,
        Value=Path(credentials_file).read_text(),
        Description="payment provider credentials (local stack: its simulator's keys)",
    )


def deploy(args):
    endpoint = args.endpoint
    ensure_signing_secret(endpoint)
    parameters = list(args.parameter)
    if args.alipay_simulator:
        put_credentials(endpoint, "/shop/payments/alipay", args.alipay_credentials)
        parameters += ["AlipayPaymentProvider=alipay", f"AlipayGateway={args.alipay_simulator}/gateway.do"]
    if args.wechatpay_simulator:
        put_credentials(endpoint, "/shop/payments/wechatpay", args.wechatpay_credentials)
        parameters += ["WechatPayPaymentProvider=wechatpay", f"WechatPayApi={args.wechatpay_simulator}"]
    if args.stripe_credentials:
        # Stripe's webhook route verifies with them even while CARD stays on
        # the sandbox (the test stack).
        put_credentials(endpoint, "/shop/payments/stripe", args.stripe_credentials)
    if args.stripe_simulator:
        parameters += ["CardPaymentProvider=stripe", f"StripeApi={args.stripe_simulator}"]
    built = lay_out_build(args.dir, args.profile)
    sam_deploy(endpoint, built, parameters)
    stack_name = "shop-local"
    apis = create_http_api_routes(endpoint, stack_name)
    cfn = clients(endpoint, "cloudformation")
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    out = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    api_id = out["HttpApiId"]
    outputs = {
        "endpoint": endpoint,
        "stackName": stack_name,
        "region": REGION,
        "apiId": api_id,
        "apiUrl": f"{endpoint}/_aws/execute-api/{api_id}",
        "userPoolId": out["UserPoolId"],
        "userPoolClientId": out["UserPoolClientId"],
        "adminConsoleClientId": out["AdminConsoleClientId"],
        "outputs": out,
        "routes": apis.get("HttpApi", {}).get("routes", []),
        "simulators": {"alipay": args.alipay_simulator, "wechatpay": args.wechatpay_simulator,
                       "stripe": args.stripe_simulator},
    }
    if args.stripe_simulator:
        # What an operator does in Stripe's dashboard: register the webhook.
        register = urllib.request.Request(
            f"{args.stripe_simulator}/_sim/webhook", method="POST",
            data=json.dumps({"url": outputs["apiUrl"] + "/payments/notify/stripe"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(register, timeout=10).close()
    outputs_path(args.dir).write_text(json.dumps(outputs, indent=2))
    print(f"deployed {stack_name}: {len(outputs['routes'])} routes at {outputs['apiUrl']}")


# ------------------------------------------------------------------ tokens


def foreign_client(cognito, pool):
    """Another app client of the same user pool: its tokens are genuine but
    carry another audience, which the API's authorizer must refuse."""
    for page in cognito.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool):
        for c in page["UserPoolClients"]:
            if c["ClientName"] == "foreign-app":
                return c["ClientId"]
    return cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="foreign-app", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    )["UserPoolClient"]["ClientId"]


def short_lived_client(cognito, pool):
    """An app client of the API's pool whose access tokens live one second:
    by the time a test uses one, it has expired."""
    for page in cognito.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool):
        for c in page["UserPoolClients"]:
            if c["ClientName"] == "short-lived-app":
                return c["ClientId"]
    return cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="short-lived-app",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        AccessTokenValidity=1, TokenValidityUnits={"AccessToken": "seconds"},
    )["UserPoolClient"]["ClientId"]


def foreign_pool(cognito):
    """Another user pool and its app client: its tokens are genuine but name
    another issuer, which the API's authorizer must refuse."""
    for page in cognito.get_paginator("list_user_pools").paginate(MaxResults=60):
        for p in page["UserPools"]:
            if p["Name"] == "foreign-pool":
                clients_ = cognito.list_user_pool_clients(UserPoolId=p["Id"])["UserPoolClients"]
                return p["Id"], clients_[0]["ClientId"]
    pool = cognito.create_user_pool(PoolName="foreign-pool")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName="foreign-pool-app",
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    return pool, client


def mint_token(outputs, user, admin, foreign=False, kind="api", which="AccessToken", shop_client=False):
    """Creates (or resets) `<user>@example.com` in the local user pool and
    returns a Cognito access token for it (from another app client with
    `foreign`; `kind` "expired" from a client whose tokens live a second,
    "foreign-pool" from another user pool)."""
    cognito = clients(outputs["endpoint"], "cognito-idp")
    pool, client = outputs["userPoolId"], outputs["userPoolClientId"]
    # Admins sign in through the admin console's client: admin routes take
    # only its tokens (--shop-client: an admin's token from the shop app).
    if admin and not shop_client:
        client = outputs["adminConsoleClientId"]
    if foreign:
        client = foreign_client(cognito, pool)
    if kind == "expired":
        client = short_lived_client(cognito, pool)
    elif kind == "foreign-pool":
        pool, client = foreign_pool(cognito)
    username = user if "@" in user else f"{user}@example.com"
    try:
        cognito.admin_create_user(
            UserPoolId=pool,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": username},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
    except cognito.exceptions.UsernameExistsException:
        pass
    password = "Local-" + secrets.token_urlsafe(18) + "1a"
    cognito.admin_set_user_password(
        UserPoolId=pool, Username=username, Password=password, Permanent=True
    )
    if admin:
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName="admin")
    result = cognito.admin_initiate_auth(
        UserPoolId=pool,
        ClientId=client,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    return result["AuthenticationResult"][which]


def token(args):
    kind = "expired" if args.expired else "foreign-pool" if args.foreign_pool else "api"
    outputs = load_outputs(args.dir)
    # --count N: users USER1..USERN, one token per line (tests that need
    # many independent buyers mint them in one process).
    users = [f"{args.user}{i}" for i in range(1, args.count + 1)] if args.count else [args.user]
    # The API takes access tokens only; the other two exist to prove it.
    which = "IdToken" if args.id_token else "RefreshToken" if args.refresh_token else "AccessToken"
    for user in users:
        print(mint_token(outputs, user, args.admin, args.foreign_client, kind, which, args.shop_client))


# -------------------------------------------------------------------- seed


def api_call(outputs, method, path, bearer, body=None):
    request = urllib.request.Request(
        outputs["apiUrl"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def seed(args):
    outputs = load_outputs(args.dir)
    admin = mint_token(outputs, "admin", admin=True)
    products = json.loads(Path(args.file).read_text())
    created = 0
    for product in products:
        product_id = product.pop("productId")
        # Only missing products are created, so a second `up` keeps whatever
        # the developer changed since.
        status, _ = api_call(outputs, "GET", f"/products/{product_id}", admin)
        if status == 200:
            continue
        status, body = api_call(outputs, "PUT", f"/products/{product_id}", admin, product)
        if status != 201:
            sys.exit(f"seeding {product_id} failed: {status} {body}")
        created += 1
    print(f"demo catalog: {created} products created, {len(products) - created} already there")
    if args.rebate_rules:
        # Rules an admin has set since are kept.
        status, current = api_call(outputs, "GET", "/admin/rebate-rules", admin)
        if status == 200:
            print(f"rebate rules: version {current['version']} already set")
            return
        status, body = api_call(outputs, "PUT", "/admin/rebate-rules", admin, json.loads(Path(args.rebate_rules).read_text()))
        if status != 200:
            sys.exit(f"setting the demo rebate rules failed: {status} {body}")
        print(f"rebate rules: demo rules set as version {body['version']}")


def pay(args):
    """Plays the customer at the payment's provider: the sandbox's signed
    result callback, or the Alipay simulator's pay page (which then notifies
    the API as Alipay does)."""
    outputs = load_outputs(args.dir)
    dynamodb = clients(outputs["endpoint"], "dynamodb")
    item = dynamodb.get_item(
        TableName=outputs["outputs"]["PaymentsTableName"], Key={"paymentId": {"S": args.payment_id}}
    ).get("Item")
    if not item:
        sys.exit(f"no payment {args.payment_id}")
    provider = item.get("provider", {}).get("S", "sandbox")
    if provider != "sandbox":
        return pay_at_simulator(outputs, provider, args)
    body = {
        "paymentId": args.payment_id,
        "orderId": item["orderId"]["S"],
        "paymentStatus": "FAILED" if args.fail else "SUCCESS",
        "amount": int(item["amount"]["N"]) + (1 if args.wrong_amount else 0),
        "currency": item["currency"]["S"],
        "providerTransactionId": "sandbox-" + secrets.token_hex(8),
    }
    if args.fail:
        body["failureReason"] = "card declined (sandbox)"
    raw = json.dumps(body).encode()
    timestamp = int(time.time()) - (600 if args.stale_timestamp else 0)
    secret = signing_secret(outputs).encode()
    if args.bad_signature:
        secret = b"not-the-secret"
    digest = hmac.new(secret, f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        outputs["apiUrl"] + "/payments/notify",
        method="POST",
        data=raw,
        headers={"Content-Type": "application/json", "X-Payment-Signature": f"t={timestamp},v1={digest}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode())
        sys.exit(1)


def pay_at_simulator(outputs, provider, args):
    simulator = (outputs.get("simulators") or {}).get(provider)
    if not simulator:
        sys.exit(f"this payment is {provider}'s but the stack has no {provider} simulator")
    action = "close" if args.fail else "pay"
    request = urllib.request.Request(
        f"{simulator}/pay/{args.payment_id}", method="POST",
        data=urllib.parse.urlencode({"action": action}).encode(),
        headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as err:
        print(err.code, err.read().decode())
        sys.exit(1)
    print(f"the simulator now notifies the API; its ledger: {simulator}/_sim/trades/{args.payment_id}")


def dead_letter_queues(outputs):
    """(DLQ url, source queue url, consumer function) for every queue of
    the stack that has a redrive policy."""
    endpoint = outputs["endpoint"]
    sqs, lambda_ = clients(endpoint, "sqs"), clients(endpoint, "lambda")
    cfn = clients(endpoint, "cloudformation")
    resources = cfn.describe_stack_resources(StackName=outputs["stackName"])["StackResources"]
    queue_urls = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::SQS::Queue"]
    arn_to_url = {
        sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]: u
        for u in queue_urls
    }
    consumers = {}
    for mapping in lambda_.list_event_source_mappings().get("EventSourceMappings", []):
        consumers[mapping.get("EventSourceArn")] = mapping.get("FunctionArn", "").split(":")[-1]
    found = []
    for source_arn, source_url in arn_to_url.items():
        policy = sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])["Attributes"].get("RedrivePolicy")
        if policy:
            dlq_url = arn_to_url.get(json.loads(policy)["deadLetterTargetArn"])
            if dlq_url:
                found.append((dlq_url, source_url, consumers.get(source_arn)))
    return found


def function_logs(outputs, function):
    """A function's log lines as Lambda writes them to CloudWatch Logs
    (the emulator keeps them there too), oldest first."""
    logs = clients(outputs["endpoint"], "logs")
    lines, token = [], None
    while True:
        kwargs = {"logGroupName": f"/aws/lambda/{function}"}
        if token:
            kwargs["nextToken"] = token
        try:
            page = logs.filter_log_events(**kwargs)
        except Exception:  # no log group yet: the function never ran
            return lines
        lines += [e["message"].rstrip("\n") for e in page.get("events", [])]
        token = page.get("nextToken")
        if not token or not page.get("events"):
            return lines


def error_of(line):
    """Why a log line says a message failed: the `error` field of a JSON
    line (the functions log JSON), else the text after `error=`."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        fields = record.get("fields") if isinstance(record.get("fields"), dict) else record
        if fields.get("error"):
            return str(fields["error"])[:300]
    return line[line.index("error="):][:300] if "error=" in line else line[-300:]


def last_error(outputs, function, message_id):
    """The consumer's last log line about a message: why it failed."""
    if not function:
        return None
    lines = [line for line in function_logs(outputs, function) if message_id in line]
    return error_of(lines[-1]) if lines else None


def delivery_failures_queue(outputs):
    """The queue where failed asynchronous invocations (the schedules) and
    undeliverable SNS messages are recorded; it has no source to redrive to."""
    cfn = clients(outputs["endpoint"], "cloudformation")
    for r in cfn.describe_stack_resources(StackName=outputs["stackName"])["StackResources"]:
        if r["LogicalResourceId"] == "DeliveryFailuresQueue":
            return r["PhysicalResourceId"]
    return None


def drain(sqs, queue_url):
    """Every message visible in a queue now, each once. They are hidden
    while the listing runs and made visible again at its end (see
    `release`), so a listing never hides them from the next command."""
    seen, found = set(), []
    while True:
        out = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0,
            AttributeNames=["All"], MessageAttributeNames=["All"],
        )
        messages = [m for m in out.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            return found
        for m in messages:
            seen.add(m["MessageId"])
            found.append(m)


def release(sqs, queue_url, messages):
    for m in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)


def dlq(args):
    """Lists the messages in the stack's dead-letter queues with the reason
    their consumer gave, and with --redrive moves them back to their queue;
    then lists the delivery-failures queue (its alarm points here)."""
    outputs = load_outputs(args.dir)
    sqs = clients(outputs["endpoint"], "sqs")
    total = 0
    for dlq_url, source_url, function in dead_letter_queues(outputs):
        messages = drain(sqs, dlq_url)
        for m in messages:
            total += 1
            print(f"{dlq_url.rsplit('/', 1)[-1]}  {m['MessageId']}  received {m['Attributes'].get('ApproximateReceiveCount')}x")
            print(f"  body:   {m['Body'][:200]}")
            print(f"  reason: {last_error(outputs, function, m['MessageId']) or 'not found in the consumer log'}")
            if args.redrive:
                attributes = m.get("MessageAttributes") or {}
                sqs.send_message(QueueUrl=source_url, MessageBody=m["Body"], MessageAttributes=attributes)
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
                print(f"  redriven to {source_url.rsplit('/', 1)[-1]}")
        if not args.redrive:
            release(sqs, dlq_url, messages)
    print(f"{total} message(s) in dead-letter queues" + (" redriven" if args.redrive and total else ""))
    failures_url = delivery_failures_queue(outputs)
    if failures_url:
        failures = drain(sqs, failures_url)
        for m in failures:
            print(f"{failures_url.rsplit('/', 1)[-1]}  {m['MessageId']}  (a failed invocation or delivery; fix the cause, then invoke again)")
            print(f"  body:   {m['Body'][:300]}")
        release(sqs, failures_url, failures)
        print(f"{len(failures)} message(s) in the delivery-failures queue")


def invoke(args):
    """Invokes one deployed function with an event file, as a developer
    would with `sam local invoke` (which needs Docker): `sam remote invoke`
    from the project's SAM CLI, pointed at the emulator, prints the
    function's answer (and its logs where the emulator returns them)."""
    outputs = load_outputs(args.dir)
    template = yaml_parse((ROOT / "template.yaml").read_text())
    logical = [
        rid for rid, r in template["Resources"].items()
        if r.get("Type") == "AWS::Serverless::Function"
        and (r.get("Metadata") or {}).get("BuildProperties", {}).get("Binary") == args.name
    ]
    if not logical:
        sys.exit(f"no function of template.yaml is built from {args.name!r} (a crate under functions/)")
    event = Path(args.event) if args.event else ROOT / "events" / f"{args.name}.json"
    if not event.exists():
        sys.exit(f"no event file {event}; pass one as the second argument")
    env = dict(os.environ, AWS_ENDPOINT_URL=outputs["endpoint"], AWS_REGION=REGION,
               AWS_DEFAULT_REGION=REGION, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               SAM_CLI_TELEMETRY="0")
    sam = Path(sys.executable).parent / "sam"
    command = [str(sam), "remote", "invoke", logical[0], "--stack-name", outputs["stackName"],
               "--event-file", str(event), "--region", REGION]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)


def logs(args):
    """One function's log lines from CloudWatch Logs (every function's
    output is there, API and schedules included); NAME is its crate name
    (create-order) or any part of its deployed name."""
    outputs = load_outputs(args.dir)
    lambda_ = clients(outputs["endpoint"], "lambda")
    wanted = args.name.replace("-", "").lower()
    names = [
        f["FunctionName"]
        for page in lambda_.get_paginator("list_functions").paginate()
        for f in page["Functions"]
        if wanted in f["FunctionName"].replace("-", "").lower()
    ]
    if not names:
        sys.exit(f"no function of the stack matches {args.name!r}")
    for name in names:
        for line in function_logs(outputs, name)[-args.lines:]:
            print(f"{name}  {line}" if len(names) > 1 else line)


def secret(args):
    print(signing_secret(load_outputs(args.dir)))


def web_config(args):
    """The web app's config.json: where the API and the user pool are, from
    the stack's outputs (the app has none of them built in)."""
    outputs = load_outputs(args.dir)
    print(json.dumps({
        "apiUrl": outputs["apiUrl"],
        "region": outputs["region"],
        "userPoolId": outputs["userPoolId"],
        "userPoolClientId": outputs["userPoolClientId"],
        "adminConsoleClientId": outputs["adminConsoleClientId"],
        # The emulator answers Cognito's API; on AWS the app uses the
        # regional endpoint and this key is absent.
        "cognitoEndpoint": outputs["endpoint"] + "/",
    }, indent=2))


def user(args):
    """Creates (or resets) a confirmed user with the given password, in the
    admin group with --admin: what an operator does in the console for the
    first admin (admins are never made by signing up)."""
    outputs = load_outputs(args.dir)
    cognito = clients(outputs["endpoint"], "cognito-idp")
    pool = outputs["userPoolId"]
    try:
        cognito.admin_create_user(
            UserPoolId=pool, Username=args.email, MessageAction="SUPPRESS",
            UserAttributes=[{"Name": "email", "Value": args.email}, {"Name": "email_verified", "Value": "true"}],
        )
    except cognito.exceptions.UsernameExistsException:
        pass
    cognito.admin_set_user_password(UserPoolId=pool, Username=args.email, Password=args.password, Permanent=True)
    if args.admin:
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=args.email, GroupName="admin")


def info(args):
    print(json.dumps(load_outputs(args.dir), indent=2))


def env(args):
    """Shell exports that give a locally run function (cargo lambda watch)
    the same environment as the deployed ones."""
    outputs = load_outputs(args.dir)
    lambda_ = clients(outputs["endpoint"], "lambda")
    variables = {}
    for page in lambda_.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            variables.update(function.get("Environment", {}).get("Variables", {}))
    variables.update(
        AWS_ENDPOINT_URL=outputs["endpoint"],
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
    )
    for name, value in sorted(variables.items()):
        print(f"export {name}={shlex.quote(value)}")


def check_fault_guard(args):
    """Asks CloudFormation for change sets of the deployed template with a
    fault hook set: refused on every stage but local (the template's Rules),
    accepted on local. Creates nothing: refused sets are never made, the
    accepted one is deleted unexecuted."""
    outputs = load_outputs(args.dir)
    endpoint = outputs["endpoint"]
    cfn = clients(endpoint, "cloudformation")
    body = cfn.get_template(StackName=outputs["stackName"], TemplateStage="Original")["TemplateBody"]
    s3 = clients(endpoint, "s3")
    key = "fault-guard-check.template"
    s3.put_object(Bucket="shop-local-artifacts", Key=key, Body=body if isinstance(body, str) else yaml_dump(body))
    url = f"{endpoint}/shop-local-artifacts/{key}"
    deployed = {p["ParameterKey"]: p["ParameterValue"]
                for p in cfn.describe_stacks(StackName=outputs["stackName"])["Stacks"][0]["Parameters"]}
    failures = []
    for stage in ("dev", "prod", "local"):
        for hook in ("PublisherFaultEvery", "ConsumerCrashEvery", "NotifierFaultEvery"):
            params = dict(deployed, Stage=stage, PublisherFaultEvery="0", ConsumerCrashEvery="0", NotifierFaultEvery="0")
            params[hook] = "3"
            name = f"fault-guard-{stage}-{hook.lower()}"
            try:
                cfn.create_change_set(
                    StackName=name, ChangeSetName="check", ChangeSetType="CREATE", TemplateURL=url,
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                    Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
                )
                accepted, message = True, ""
                cfn.delete_stack(StackName=name)
            except cfn.exceptions.ClientError as e:
                accepted, message = False, str(e)
            if stage == "local" and not accepted:
                failures.append(f"{stage}/{hook}: refused: {message}")
            if stage != "local" and (accepted or "must be 0 unless Stage is local" not in message):
                failures.append(f"{stage}/{hook}: {'accepted' if accepted else message}")
    if failures:
        sys.exit("fault guard: " + "; ".join(failures))
    print("fault guard: hooks refused on dev and prod, accepted on local")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="the stack's state folder under .local/stacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("deploy")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--profile", default="debug", help="cargo profile folder under target/")
    p.add_argument("--parameter", action="append", default=[], help="extra template parameter, Name=Value")
    p.add_argument("--alipay-simulator", help="the Alipay simulator's URL: ALIPAY payments go to it")
    p.add_argument("--alipay-credentials", help="with --alipay-simulator: its credentials.json")
    p.add_argument("--wechatpay-simulator", help="the WeChat Pay simulator's URL: WECHAT_PAY payments go to it")
    p.add_argument("--wechatpay-credentials", help="with --wechatpay-simulator: its credentials.json")
    p.add_argument("--stripe-simulator", help="the Stripe simulator's URL: CARD payments go to it")
    p.add_argument("--stripe-credentials", help="with --stripe-simulator: its credentials.json")
    p.set_defaults(run=deploy)
    p = sub.add_parser("token")
    p.add_argument("--user", default="alice")
    p.add_argument("--admin", action="store_true")
    p.add_argument("--count", type=int, default=0, help="tokens for users USER1..USERN, one per line")
    p.add_argument("--foreign-client", action="store_true", help="a token from another app client (wrong audience)")
    p.add_argument("--expired", action="store_true", help="a token that expires a second after it is issued")
    p.add_argument("--foreign-pool", action="store_true", help="a token from another user pool (wrong issuer)")
    p.add_argument("--id-token", action="store_true", help="the ID token instead (which the API refuses)")
    p.add_argument("--shop-client", action="store_true", help="with --admin: from the shop app's client (admin routes refuse it)")
    p.add_argument("--refresh-token", action="store_true", help="the refresh token instead (which the API refuses)")
    p.set_defaults(run=token)
    p = sub.add_parser("seed")
    p.add_argument("file")
    p.add_argument("--rebate-rules", help="rebate rules to set when none are")
    p.set_defaults(run=seed)
    p = sub.add_parser("pay")
    p.add_argument("payment_id")
    p.add_argument("--fail", action="store_true", help="report a failed payment")
    p.add_argument("--stale-timestamp", action="store_true", help="sign with a timestamp 10 minutes old")
    p.add_argument("--bad-signature", action="store_true", help="sign with the wrong secret")
    p.add_argument("--wrong-amount", action="store_true", help="report one minor unit more than the payment")
    p.set_defaults(run=pay)
    p = sub.add_parser("dlq")
    p.add_argument("--redrive", action="store_true", help="move the messages back to their source queue")
    p.set_defaults(run=dlq)
    p = sub.add_parser("invoke", help="invoke one deployed function with an event file (sam remote invoke)")
    p.add_argument("name", help="the function's crate name, e.g. get-product-info")
    p.add_argument("event", nargs="?", help="the event file (default events/NAME.json)")
    p.set_defaults(run=invoke)
    p = sub.add_parser("logs", help="one function's log lines from CloudWatch Logs")
    p.add_argument("name")
    p.add_argument("--lines", type=int, default=200)
    p.set_defaults(run=logs)
    p = sub.add_parser("secret")
    p.set_defaults(run=secret)
    p = sub.add_parser("info")
    p.set_defaults(run=info)
    p = sub.add_parser("web-config", help="the web app's config.json, from the stack's outputs")
    p.set_defaults(run=web_config)
    p = sub.add_parser("user", help="a confirmed user with a known password (--admin: in the admin group)")
    p.add_argument("--email", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--admin", action="store_true")
    p.set_defaults(run=user)
    p = sub.add_parser("env")
    p.set_defaults(run=env)
    p = sub.add_parser("check-fault-guard", help="the template refuses fault hooks outside the local stage")
    p.set_defaults(run=check_fault_guard)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
