/*
 * twinlane-agent: command line, configuration loading, and the hand-over to tl_agent_run.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "agent.h"
#include "config.h"
#include "log.h"

static void print_usage(FILE *out)
{
    fprintf(out,
            "Usage: twinlane-agent -c FILE [--check] [--salvage-wal] [--log-level LEVEL]\n"
            "\n"
            "Takes events from producers on a local socket and writes every event to two\n"
            "regional Kafka clusters, in the same partition and order in both.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE      configuration file (libconfig syntax; see\n"
            "                         docs/configuration.md)\n"
            "      --check            validate the configuration and exit\n"
            "      --salvage-wal      when a WAL segment is damaged, keep its records before\n"
            "                         the damage, move the rest into WAL_DIR/damaged and start;\n"
            "                         the events from the damage on are lost (the log says\n"
            "                         how many). Without it the agent refuses to start\n"
            "      --log-level LEVEL  error, warn, info or debug (overrides agent.log_level)\n"
            "  -h, --help             show this help and exit\n"
            "  -V, --version          show the version and exit\n"
            "\n"
            "Signals: SIGTERM or SIGINT stop accepting events, finish the events in flight\n"
            "(bounded by agent.shutdown_timeout_ms) and exit; a second signal exits at once.\n"
            "\n"
            "Exit status:\n"
            "  0  clean shutdown, or a valid configuration with --check\n"
            "  1  the agent could not start (region unreachable, topic missing or different,\n"
            "     socket in use, damaged WAL); the log says which\n"
            "  2  invalid command line or configuration\n");
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"salvage-wal", no_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    const char *level_name = NULL;
    bool check_only = false;
    struct tl_agent_options agent_opts = {0};
    int opt;

    while ((opt = getopt_long(argc, argv, "c:hV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'l':
            level_name = optarg;
            break;
        case 's':
            agent_opts.salvage_wal = true;
            break;
        case 'h':
            print_usage(stdout);
            return TL_EXIT_OK;
        case 'V':
            printf("twinlane-agent %s (librdkafka %s)\n", TL_VERSION, rd_kafka_version_str());
            return TL_EXIT_OK;
        default:
            fprintf(stderr, "Try 'twinlane-agent --help'.\n");
            return TL_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "twinlane-agent: unexpected argument '%s'; try 'twinlane-agent --help'\n",
                argv[optind]);
        return TL_EXIT_USAGE;
    }
    if (!config_path) {
        fprintf(stderr, "twinlane-agent: missing -c FILE; try 'twinlane-agent --help'\n");
        return TL_EXIT_USAGE;
    }

    enum tl_log_level level = TL_LOG_INFO;
    if (level_name && !tl_log_parse_level(level_name, &level)) {
        fprintf(stderr, "twinlane-agent: invalid --log-level '%s'; accepted: error, warn, info, "
                "debug\n", level_name);
        return TL_EXIT_USAGE;
    }

    struct tl_config cfg;
    char err[1024];
    if (tl_config_load(config_path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "twinlane-agent: invalid configuration: %s\n", err);
        return TL_EXIT_USAGE;
    }
    if (check_only) {
        printf("%s: configuration is valid\n", config_path);
        tl_config_free(&cfg);
        return TL_EXIT_OK;
    }
    tl_log_set_level(level_name ? level : cfg.log_level);

    int rc = tl_agent_run(&cfg, &agent_opts, err, sizeof(err));
    if (rc != TL_EXIT_OK) {
        tl_log_error("agent", "start-up failed: %s", err);
        fprintf(stderr, "twinlane-agent: %s\n", err);
    }
    tl_config_free(&cfg);
    return rc;
}
