/* embed_file: writes a C source defining a byte array with a file's contents
 * (NUL-terminated), so data such as the CLIP vocabulary is compiled into the
 * binary. Usage: embed_file INPUT OUTPUT.c SYMBOL */
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: embed_file INPUT OUTPUT.c SYMBOL\n");
        return 2;
    }
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "w");
    if (!in || !out) {
        perror("embed_file");
        return 1;
    }
    fprintf(out, "/* generated from %s by tools/embed_file.c */\n#include <stddef.h>\n", argv[1]);
    fprintf(out, "const unsigned char %s[] = {\n", argv[3]);
    size_t n = 0;
    int c;
    while ((c = fgetc(in)) != EOF) fprintf(out, "%d,%s", c, ++n % 20 ? "" : "\n");
    fprintf(out, "0};\nconst size_t %s_len = %zu;\n", argv[3], n);
    fclose(in);
    return fclose(out) ? 1 : 0;
}
