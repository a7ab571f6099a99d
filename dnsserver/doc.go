// Package dnsserver is the authoritative GSLB DNS front door: it answers for the
// configured zone from the current routing snapshot.
//
// A Server serves UDP (on several SO_REUSEPORT sockets) and TCP on one port.
// TCP is miekg/dns's server; UDP is a loop of our own (udp.go): a few
// workers per socket read queries in batches and write the responses in
// batches (recvmmsg and sendmmsg on Linux), with miekg/dns unpacking and
// packing, and each worker remembers the queries and responses it saw last
// (cache.go). Every query reads the routing snapshot it is handed, so a drain
// or a health change shows in the very next answer. Everything that depends only on the
// configuration (the zone's SOA, NS, glue and static records, the addresses of
// every service in every datacenter) is built once per configuration and
// published atomically; everything that depends on the snapshot (which routing
// service answers a name, which addresses a routing target has) is indexed once
// per snapshot. Answering a query then costs a few map lookups and the routing
// decision, and allocates nothing of its own.
//
// The zone follows the RFCs an authoritative server is held to: AA on
// authoritative answers, SOA in the authority section of negative answers
// (RFC 2308), referrals below delegations, empty non-terminals and wildcards
// (RFC 4592), EDNS(0) (RFC 6891) with Client Subnet (RFC 7871), minimal ANY
// answers (RFC 8482) and truncation to the client's UDP size, DNAME (RFC
// 6672), NSID (RFC 5001), DNS Cookies (RFC 7873, RFC 9018; cookies.go) and
// Extended DNS Errors (RFC 8914). Every response, errors included, is built
// by answer and finish (answer.go). Responses over UDP are rate limited per
// client network (RRL) so the server is a poor amplifier; a valid server
// cookie proves the source and passes. TCP connections are capped in all and
// per client network, the longest idle giving way to a newcomer (listen.go).
package dnsserver
