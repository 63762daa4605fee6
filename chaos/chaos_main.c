/*
 * twinlane-chaos: proves or refutes the agent's delivery guarantees by experiment.
 *
 *   twinlane-chaos run SCENARIO_FILE... [--out DIR] [--agent-bin PATH] [--mock-bin PATH]
 *                      [--kafka-tool PATH] [--keep]
 *   twinlane-chaos list [--dir DIR]
 *
 * Exit status: 0 when every scenario passed; 1 when an expectation failed in any of them;
 * 3 when a scenario could not be run (and none failed); 77 when a scenario was skipped
 * because this machine lacks what it needs (and none failed or could not run); 2 for an
 * invalid command line.
 */
#include <dirent.h>
#include <getopt.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chaos_run.h"
#include "chaos_scenario.h"
#include "mem.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_ERROR 3
#define EXIT_SKIPPED 77

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: twinlane-chaos run SCENARIO_FILE... [options]\n"
            "       twinlane-chaos list [--dir DIR]\n"
            "       twinlane-chaos --help\n"
            "\n"
            "Runs chaos scenarios against twinlane-agent: starts two regions (mock clusters or\n"
            "real Kafka clusters), the agent and a load generator, injects the scenario's\n"
            "faults, then reads both regions back and checks that no acknowledged event is\n"
            "lost, that each partition keeps the agent's order, and how fast acknowledgements\n"
            "resumed. Each scenario writes summary.txt, report.json and timeline.svg into\n"
            "OUT/NAME and prints the summary.\n"
            "\n"
            "Options of run:\n"
            "  -o, --out DIR         directory for the reports (default: chaos-results)\n"
            "      --agent-bin PATH  twinlane-agent to test (default: the one built with this\n"
            "                        program, %s)\n"
            "      --mock-bin PATH   twinlane-mock-cluster (default: %s)\n"
            "      --kafka-tool PATH kafka-cluster script (default: %s)\n"
            "      --keep            keep the agent's data directory (WAL) after the run\n"
            "\n"
            "list prints the scenarios in DIR (default: %s) with their descriptions.\n"
            "\n"
            "Exit status: 0 all scenarios passed, 1 an expectation failed, 2 invalid command\n"
            "line, 3 a scenario could not be run, 77 a scenario was skipped because this\n"
            "machine lacks a feature (such as tc netem) and nothing failed.\n",
            TL_CHAOS_AGENT_BIN, TL_CHAOS_MOCK_BIN, TL_CHAOS_KAFKA_TOOL, TL_CHAOS_SCENARIO_DIR);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_scenarios(int argc, char **argv)
{
    const char *dir = TL_CHAOS_SCENARIO_DIR;
    if (argc == 3 && strcmp(argv[1], "--dir") == 0) {
        dir = argv[2];
    } else if (argc != 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "twinlane-chaos: cannot open the scenario directory %s\n", dir);
        return EXIT_USAGE;
    }
    char **names = NULL;
    size_t count = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".conf") == 0) {
            names = tl_xrealloc(names, (count + 1) * sizeof(*names));
            names[count++] = tl_xstrdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, count, sizeof(*names), compare_names);
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        config_t cfg;
        config_init(&cfg);
        const char *description = "(unreadable)";
        const char *backend = "mock";
        if (config_read_file(&cfg, path) == CONFIG_TRUE) {
            if (!config_lookup_string(&cfg, "description", &description))
                description = "";
            config_lookup_string(&cfg, "backend.type", &backend);
        }
        names[i][strlen(names[i]) - 5] = '\0';
        printf("%-24s %-6s %s\n", names[i], backend, description);
        config_destroy(&cfg);
        free(names[i]);
    }
    free(names);
    return 0;
}

static int run(int argc, char **argv)
{
    struct chaos_options opts = {.agent_bin = TL_CHAOS_AGENT_BIN,
                                 .mock_bin = TL_CHAOS_MOCK_BIN,
                                 .kafka_tool = TL_CHAOS_KAFKA_TOOL,
                                 .out_root = "chaos-results"};
    enum { OPT_AGENT = 256, OPT_MOCK, OPT_KAFKA, OPT_KEEP };
    static const struct option options[] = {
        {"out", required_argument, NULL, 'o'},
        {"agent-bin", required_argument, NULL, OPT_AGENT},
        {"mock-bin", required_argument, NULL, OPT_MOCK},
        {"kafka-tool", required_argument, NULL, OPT_KAFKA},
        {"keep", no_argument, NULL, OPT_KEEP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
        switch (c) {
        case 'o':
            opts.out_root = optarg;
            break;
        case OPT_AGENT:
            opts.agent_bin = optarg;
            break;
        case OPT_MOCK:
            opts.mock_bin = optarg;
            break;
        case OPT_KAFKA:
            opts.kafka_tool = optarg;
            break;
        case OPT_KEEP:
            opts.keep = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "twinlane-chaos: run needs at least one scenario file\n");
        return EXIT_USAGE;
    }

    chaos_run_install_signal_handlers();
    size_t count = (size_t)(argc - optind);
    struct chaos_outcome *outcomes = tl_xcalloc(count, sizeof(*outcomes));
    size_t tally[4] = {0};
    for (size_t i = 0; i < count; i++) {
        chaos_run_scenario(&opts, argv[optind + (int)i], &outcomes[i]);
        tally[outcomes[i].verdict]++;
    }

    printf("%-24s %-8s %6s  %s\n", "scenario", "verdict", "time", "first failure or reason");
    for (size_t i = 0; i < count; i++)
        printf("%-24s %-8s %5llds  %s\n", outcomes[i].name,
               chaos_verdict_name(outcomes[i].verdict), (long long)outcomes[i].seconds,
               outcomes[i].headline);
    printf("%zu passed, %zu failed, %zu skipped, %zu could not run\n", tally[CHAOS_PASSED],
           tally[CHAOS_FAILED], tally[CHAOS_SKIPPED], tally[CHAOS_ERROR]);
    free(outcomes);

    if (tally[CHAOS_FAILED])
        return EXIT_FAILED;
    if (tally[CHAOS_ERROR])
        return EXIT_ERROR;
    if (tally[CHAOS_SKIPPED])
        return EXIT_SKIPPED;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "run") == 0)
        return run(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return list_scenarios(argc - 1, argv + 1);
    fprintf(stderr, "twinlane-chaos: unknown command \"%s\"; use run or list\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
