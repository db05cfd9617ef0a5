import type { Command } from 'commander';
import type { CommandContext } from '../program.ts';

/** `form pack <verb>`: every pack verb hangs off the one `pack` noun, described once here. */
export function packVerb({ noun }: CommandContext, verb: string): Command {
  return noun('pack', 'Build, check and ship Formpacks').command(verb);
}

/**
 * `form pack <verb> [dir] [-f <Formfile>]`: the verbs that read a build directory and its Formfile
 * (build, ship, validate) take them the same way.
 */
export function packDirVerb(ctx: CommandContext, verb: string, description: string): Command {
  return packVerb(ctx, verb)
    .description(description)
    .argument('[dir]', 'build directory holding the Formfile', '.')
    .option('-f, --file <name>', 'Formfile to read, relative to the build directory', 'Formfile');
}
