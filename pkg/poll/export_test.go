package poll

// Within is Until with a timeout of the test's choosing.
var Within = within
