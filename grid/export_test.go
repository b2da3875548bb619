package grid

// PublishAt lets external tests publish a chosen sequence number.
var PublishAt = (*Client).publishAt
