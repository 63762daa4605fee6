/*
 * The twinlane command: `twinlane [--help] [--version] COMMAND [ARGS]`.
 *
 * Each subcommand is a function that takes the arguments from its own name onwards
 * (argv[0] is the subcommand name) and returns the process exit code. To add one, write the
 * function in its own file, declare it below and add one line to the commands table.
 */
#include <stdio.h>
#include <string.h>

/* Subcommands, one per file in cli/. */
int tl_cli_produce(int argc, char **argv);
int tl_cli_heartbeats(int argc, char **argv);
int tl_cli_offsets(int argc, char **argv);
int tl_cli_status(int argc, char **argv);
int tl_cli_control(int argc, char **argv);

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"produce", tl_cli_produce, "send lines from a file or stdin as events to the agent"},
    {"heartbeats", tl_cli_heartbeats, "print the heartbeats that agents write to a region"},
    {"offsets", tl_cli_offsets, "translate a consumer group's offsets to the other region"},
    {"status", tl_cli_status, "show the regions, backlog and heartbeats of one or many agents"},
    {"fence", tl_cli_control, "stop sending events to a region"},
    {"unfence", tl_cli_control, "lift a region's fence; it is backfilled, then used again"},
    {"failover", tl_cli_control, "move every event to one region by fencing the other"},
    {"failback", tl_cli_control, "unfence every region"},
    {"drain", tl_cli_control, "stop an agent cleanly after flushing its events"},
    {"pause", tl_cli_control, "stop reading producer connections without closing them"},
    {"resume", tl_cli_control, "read producer connections again"},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

/* Exit code for a command line that cannot be run. */
#define EXIT_USAGE 2

static void print_usage(FILE *out)
{
    fputs("Usage: twinlane [--help] [--version] COMMAND [ARGS]\n"
          "\n"
          "Commands:\n",
          out);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fputs("\nRun `twinlane COMMAND --help` for the options of a command.\n", out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return EXIT_USAGE;
    }

    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("twinlane %s\n", TL_VERSION);
        return 0;
    }

    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }

    fprintf(stderr, "twinlane: unknown command \"%s\"; commands:", name);
    for (size_t i = 0; i < COMMAND_COUNT; i++)
        fprintf(stderr, " %s", commands[i].name);
    fputs(". Run `twinlane --help` for usage.\n", stderr);
    return EXIT_USAGE;
}
