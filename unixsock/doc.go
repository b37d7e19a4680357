// Package unixsock creates and checks the Unix sockets a relay serves on, so
// that every socket the project listens on gets the same protection: a path
// that fits sun_path, a directory only its owner (the server's effective uid
// or root) can write to, no takeover of a socket a live server holds, and
// mode 0600 from the moment it can accept.
//
// Check runs every test without creating anything, for a daemon's pre-flight
// before it has side effects; Listen repeats the checks where it matters and
// creates the socket.
package unixsock
