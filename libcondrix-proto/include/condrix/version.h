/* The product version, shared by every binary and reported by core/info. */
#ifndef CONDRIX_VERSION_H
#define CONDRIX_VERSION_H

#define CX_VERSION "0.1.0"
#define CX_PROTOCOL_VERSION 1

#endif
