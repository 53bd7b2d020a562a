// Package mdtap holds the domain of the mdtap capture sidecar: the record that
// describes one MyData request/response exchange, the string forms of protected
// values, the sector vocabulary and API catalog, NATS subjects and store URLs.
//
// These are wire contracts. Other packages fill them in; they never redefine
// them. The package imports the standard library only.
package mdtap
