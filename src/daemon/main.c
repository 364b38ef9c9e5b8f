/*
 * main.c - impetusd's command line.
 *
 *   impetusd [-c FILE]            run in the foreground (embedded default
 *                                 configuration without -c)
 *   impetusd [-c FILE] --check    check the configuration and exit
 *   impetusd --print-default-config
 *   impetusd --version | --help
 *
 * Exit status: 0 on success, 1 on a bad configuration or a failed start,
 * 2 on a usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/conf_core.h"
#include "daemon/daemon.h"
#include "lib/diag.h"

static void usage(FILE *out);

static void
usage(FILE *out)
{
	fputs("usage: impetusd [-c FILE] [--check]\n"
	      "       impetusd --print-default-config | --version | --help\n"
	      "\n"
	      "  -c, --config FILE       configuration file (ecelerity.conf syntax);\n"
	      "                          without it the embedded default is used\n"
	      "  -t, --check             check the configuration, print errors, exit\n"
	      "      --print-default-config  print the embedded default configuration\n"
	      "  -V, --version           print the version\n"
	      "\n"
	      "Runs in the foreground. Signals: TERM/INT stop gracefully, HUP reloads\n"
	      "the configuration, USR1 reopens log files.\n", out);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 't' },
		{ "print-default-config", no_argument, NULL, 'P' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_options opts = { NULL };
	int check = 0, ch;
	struct conf *c;

	diag_set_program("impetusd");
	while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opts.conf_path = optarg;
			break;
		case 't':
			check = 1;
			break;
		case 'P':
			fputs(conf_default_text, stdout);
			return 0;
		case 'V':
			printf("impetusd %s\n", IMPETUS_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "impetusd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	c = daemon_load_conf(&opts, NULL);
	if (c == NULL) {
		fprintf(stderr, "impetusd: %s: configuration has errors%s\n",
		        opts.conf_path ? opts.conf_path : "<default>",
		        check ? "" : "; not starting");
		return 1;
	}
	if (check) {
		printf("%s: configuration OK\n", opts.conf_path ? opts.conf_path : "<default>");
		conf_unref(c);
		return 0;
	}
	return daemon_run(&opts, c);
}
