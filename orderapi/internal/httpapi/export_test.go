package httpapi

// OpenAPIDoc exposes the embedded document to tests.
var OpenAPIDoc = openapiDoc
