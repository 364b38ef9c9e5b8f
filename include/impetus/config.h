/*
 * impetus/config.h - configuration options, as modules see them.
 *
 * A module declares its options as static struct conf_option objects and
 * lists them in its descriptor (impetus/module.h); the loader registers them
 * inside the module's own stanza. Values are read with
 * imp_module_setting() and come as a struct conf_setting: read the field
 * that matches the option's type. Settings belong to a configuration
 * generation and stay valid while the module instance that read them lives.
 */
#ifndef IMPETUS_CONFIG_H
#define IMPETUS_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct conf_scope;
struct conf_value;
struct throttle;

/* Scope kinds, as bits so that an option can list where it may appear. */
enum {
	CONF_SCOPE_GLOBAL           = 1u << 0,
	CONF_SCOPE_BINDING_GROUP    = 1u << 1,
	CONF_SCOPE_BINDING          = 1u << 2,
	CONF_SCOPE_DOMAIN           = 1u << 3,
	CONF_SCOPE_HOST             = 1u << 4,
	CONF_SCOPE_ESMTP_LISTENER   = 1u << 5,
	CONF_SCOPE_CONTROL_LISTENER = 1u << 6,
	CONF_SCOPE_LISTEN           = 1u << 7,
	CONF_SCOPE_PEER             = 1u << 8,
	CONF_SCOPE_SECURITY         = 1u << 9,
	CONF_SCOPE_THREADPOOL       = 1u << 10,
	CONF_SCOPE_EC_LOGGER        = 1u << 11,
	CONF_SCOPE_BOUNCE_LOGGER    = 1u << 12,
	CONF_SCOPE_FIRST_DYNAMIC    = 1u << 16,     /* modules allocate from here */
};
#define CONF_SCOPES_OUTBOUND (CONF_SCOPE_GLOBAL | CONF_SCOPE_BINDING_GROUP | \
                              CONF_SCOPE_BINDING | CONF_SCOPE_DOMAIN)

enum conf_type {
	CONF_T_BOOL,        /* true/false, yes/no, on/off, 1/0 */
	CONF_T_INT,         /* a decimal integer within [min, max] */
	CONF_T_DURATION,    /* seconds; suffixes s, m, h, d accepted */
	CONF_T_SIZE,        /* bytes; suffixes K, M, G (powers of 1024) accepted */
	CONF_T_STRING,      /* one word or string */
	CONF_T_ENUM,        /* one of enum_values, case-insensitive */
	CONF_T_LIST,        /* ( "a" "b" ), or one string as a list of one */
	CONF_T_THROTTLE,    /* "N" per second or "N/S": N per S seconds */
	CONF_T_PARAMS,      /* [ k = v … ], kept raw */
};

enum {
	CONF_F_RESTART = 1u << 0,   /* cannot change on reload: restart needed */
};

struct conf_loc {
	const char *file;   /* file name as opened */
	int line;           /* 1-based */
	int col;            /* 1-based, in bytes */
};

struct conf_setting;

struct conf_option {
	const char *name;                   /* canonical spelling; matched case-insensitively */
	enum conf_type type;
	const char *def;                    /* default as configuration text; NULL = unset */
	uint32_t scopes;                    /* CONF_SCOPE_* where it may appear */
	uint32_t flags;                     /* CONF_F_* */
	int64_t min, max;                   /* INT, DURATION, SIZE bounds (0, 0 = any >= 0) */
	const char *const *enum_values;     /* ENUM: NULL-terminated */
	const char *help;                   /* one line for documentation and --help */
	/* check: validate a STRING value, or each element of a LIST; 0, or -1
	 * with a reason in err. NULL: any text. */
	int (*check)(const char *value, char *err, size_t errlen);
	/* Filled by conf_option_register: */
	int id;                             /* registry index */
	const struct conf_setting *def_setting; /* parsed default, NULL when unset */
};

/* A typed value, set in one scope (or the default of its option). */
struct conf_setting {
	const struct conf_option *opt;
	struct conf_loc loc;                /* where it was set; file NULL for a default */
	const struct conf_scope *scope;     /* where it was set; NULL for a default */
	const struct conf_value *raw;       /* the parsed value, for PARAMS and rendering */
	int64_t i;                          /* BOOL 0/1, INT, DURATION (s), SIZE (bytes), ENUM index */
	const char *s;                      /* STRING, ENUM canonical spelling */
	const char **list;                  /* LIST elements */
	size_t nlist;
	int64_t thr_count;                  /* THROTTLE: N events … */
	int64_t thr_period_s;               /* … per this many seconds */
	struct throttle *throttle;          /* THROTTLE: the one bucket of this declaration */
};

#ifdef __cplusplus
}
#endif

#endif
