"""The local stack: DynamoDB Local + moto server + the template's resources + a local API Gateway and
event-source worker driving the same handler functions that run on Lambda (design.md §5).

Only endpoints differ from AWS: everything talks to the services through boto3/pynamodb configured by
the standard ``AWS_ENDPOINT_URL_<SERVICE>`` variables.
"""
