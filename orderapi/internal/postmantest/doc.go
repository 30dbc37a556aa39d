// Package postmantest runs the Postman collection in deploy/postman against
// a live order API with newman (Postman's CLI runner), so the collection
// people import stays true to the server. It holds only a test.
package postmantest
